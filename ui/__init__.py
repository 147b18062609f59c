"""The Streamlit app's own support code: session plumbing and cached library calls (``ui.state``), the Attack
explorer's process-wide caches (``ui.explorer_cache``), job cards (``ui.jobs_view``) and plotly figures
(``ui.figures`` and one module of figures per page concept).

Everything the app computes is the library's (``pasm``); the library never imports this package.
"""
