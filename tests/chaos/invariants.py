"""The chaos invariant checker, importable from the tests (``from tests.chaos.invariants import ...``).

The implementation lives in ``services.chaos.invariants`` so ``pdx chaos`` can run it outside pytest;
see that module for what each invariant means.
"""

from services.chaos.invariants import ExecData, InvariantChecker, InvariantReport, Section

__all__ = ["ExecData", "InvariantChecker", "InvariantReport", "Section"]
