"""SpamAssassin's verdict on a digest as it would be sent (bench/spam_score.py, local rules).

Runs only where Debian's spamassassin is installed (CI need not have it): skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "spam_score.py"


def test_a_digest_scores_below_one_point(tmp_path: Path) -> None:
    if shutil.which("spamassassin") is None:
        pytest.skip("spamassassin is not installed (apt-get install spamassassin); local check only")
    spec = importlib.util.spec_from_file_location("spam_score", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)

    [eml, *_] = [m for m in bench.render_examples(tmp_path) if "ada@" in m.name]
    result = bench.score(eml)

    print(f"\nSpamAssassin: {result.points:+.1f} points; rules: {[name for name, _, _ in result.rules]}")
    assert result.points < bench.THRESHOLD, result.rules
    assert "HTML_FONT_LOW_CONTRAST" not in {name for name, _, _ in result.rules}
