"""MkDocs hook: render the committed benchmark reports as they are written.

The reports' comparison lines read `a − b [r0 at matched kl]`; Python-Markdown (and mkdocs-autorefs)
would take `] [` for a reference link and fail the strict build, so the `[` is escaped here rather
than in the reports, which their benchmarks write."""

REPORTS = ("shift/", "loglinear/", "real/")


def on_page_markdown(markdown, page, **kwargs):
    if page.file.src_uri.startswith(REPORTS):
        return markdown.replace("] [", "] \\[")
    return markdown
