"""Report: one self-contained HTML file (inline SVG, no network) and a short Markdown summary.

``template.html`` is the page; :mod:`~pipeline.report.sections` builds its blocks from the stage
outputs, :mod:`~pipeline.report.charts` draws the SVG charts, :mod:`~pipeline.report.tables`
formats every cell.
"""

from pipeline.report.charts import remedies_chart, sqnr_chart
from pipeline.report.render import ReportInputs, render_html, render_markdown

__all__ = ["ReportInputs", "remedies_chart", "render_html", "render_markdown", "sqnr_chart"]
