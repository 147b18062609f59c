"""The student's losses beyond the label's cross-entropy: distillation from the teacher, and the weights of erased
samples' cross-entropy."""
import torch
import torch.nn.functional as F


def distillation_loss(student_logits, teacher_logits, tau):
    """τ²·KL(teacher ‖ student) at temperature τ, batch mean (Hinton et al.).

    The τ² keeps the term's gradients on the scale of the cross-entropy's whatever τ is, so λ
    alone sets the balance between label and teacher.
    """
    student = F.log_softmax(student_logits.float() / tau, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * tau**2


def erased_ce_weights(teacher_logits, labels, masks):
    """Per-sample cross-entropy weights: an erased sample counts as much as the teacher still believes its label on
    the erased view (its probability), so a face whose evidence is gone asks less of the student; others count 1."""
    belief = teacher_logits.float().softmax(1).gather(1, labels[:, None])[:, 0]
    erased = masks.flatten(1).any(1)
    return torch.where(erased, belief, torch.ones_like(belief))
