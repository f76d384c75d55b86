"""A griffe extension for the API pages, for two habits of the package's docstrings.

- They title their doctests ``Example:`` (singular), which griffe's Google parser reads as an
  admonition of Markdown text, where ``>>>`` lines become block quotes and an output such as
  ``[('conv1', 1)]`` reads as a link. Retitled ``Examples:``, the section is parsed as code.
- They name objects with Sphinx roles (``:func:`load```), which Markdown shows as written;
  here they become plain code spans.

Only the docstrings the site renders change; the package is not imported.
"""

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`~?([^`]+)`")


class ExampleSections(griffe.Extension):
    """Retitle every ``Example:`` section ``Examples:``, and turn Sphinx roles into code
    spans, as each object is loaded."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            text = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(r"`\1`", text)
