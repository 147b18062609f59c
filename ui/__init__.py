"""The Streamlit app's own support code: session plumbing (``ui.state``), plotly figures (``ui.figures``)
and the per-page computations behind them (``ui.analysis``).

The library (``pasm``) never imports this package: everything that knows about streamlit or plotly lives here.
"""
