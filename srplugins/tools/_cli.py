"""Shared command-line helpers of the tools: one help formatter and the warning printer."""
import argparse
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and prints a default once: appended as ``(default: X)`` only when the
    option has a real default (not None / False) and its help text does not already speak of its default."""

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if (default is None or isinstance(default, bool) or default == argparse.SUPPRESS or default == []
                or 'default' in text.lower() or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = ' '.join(str(d) for d in default)
        return f'{text} (default: {default})'


def warn(message):
    """One warning line on stderr (no traceback, no Python warning machinery)."""
    print(f'WARNING: {message}', file=sys.stderr, flush=True)
