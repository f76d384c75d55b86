"""A griffe extension for the API pages: the package's docstrings title their doctests
``Example:`` (singular), which griffe's Google parser reads as an admonition of Markdown
text, where ``>>>`` lines become block quotes and an output such as ``[('conv1', 1)]``
reads as a link. Retitled ``Examples:``, the section is parsed as code (rendered as pycon).
Only the docstrings the site renders change; the package is not imported.
"""

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Retitle every ``Example:`` section ``Examples:`` as each object is loaded."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
