"""Small helpers shared by the AppTest files."""
import json


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


def chart_titles(at):
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec).get("layout", {}).get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title) if title else "")
    return titles
