"""Help text of every command, the training ones included: each option's default where it has one worth showing."""
from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and "default" not in text and action.default not in (None, False, True) \
                and action.default is not argparse.SUPPRESS and action.option_strings:
            text += " (default: %(default)s)"
        return text
