"""Errors of the Nautilus integration that callers catch without importing nautilus_trader."""

from __future__ import annotations


class ConversionError(ValueError):
    """A value cannot become (or come from) a Nautilus object without loss or without risk.

    Raised *instead of* calling a Nautilus constructor with input that would abort the interpreter
    (non-ASCII identifiers, a TraderId without a hyphen ...), and for input Nautilus would reject or
    silently change (mismatched precisions, Money with more decimals than its currency, floats).
    """


class NautilusUnavailable(ImportError):
    """nautilus_trader is not installed (install the ``nautilus`` extra)."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__(
            "nautilus_trader is not installed: pip install 'paradex-bus[nautilus]' "
            "(pins nautilus_trader==1.221.0, the last release for Python 3.11)" + (f" ({cause})" if cause else "")
        )
