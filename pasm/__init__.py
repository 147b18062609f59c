"""PASM Studio: Point Adversarial Self Mining for facial expression recognition.

The core (everything but ``pasm.faces``) needs only torch, torchvision, numpy and captum, so it
runs on GPU machines that lack the UI packages.
"""
__version__ = "0.1.0"
