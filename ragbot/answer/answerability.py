"""Do the passages shown hold the answer? A threshold on the best evidence score, fit by code.

The evidence scorer (evidence.py) rates every sentence of the passages against the question;
when even the best sentence scores below the threshold, ragbot refuses. The threshold is not
chosen by hand: `fit` sets it on questions made from the user's own documents (trainset.py), each
shown with the chunk that answers it (answerable) and with that chunk, or its whole document,
withheld (unanswerable), plus the questions the user's votes labelled. It sits at the
`false_refusal` quantile of the answerable questions' scores: refusing the costlier mistake, an
answerable question, at most that often on the user's own data. The fit also reports the AUC of
the best score and both refusal rates, on the training questions and on a held-out split.

The check names the scorer whose scores it was fit on; a check for another scorer (or a stored
check from before evidence-first answering, which read word lists) is not used, and the
`evidence_threshold` setting applies instead. Everything is stored as plain JSON in an
adapter's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ragbot.errors import RagbotError

FALSE_REFUSAL = 0.05  # the share of answerable training questions the threshold may refuse
MIN_EACH = 5  # answerable and unanswerable training questions each, to fit at all


class AnswerabilityError(RagbotError):
    pass


@dataclass
class AnswerabilityCheck:
    scorer: str  # the evidence scorer whose best-sentence score it thresholds
    threshold: float  # refuse when the best evidence score is below this
    fit_report: dict = field(default_factory=dict)  # sizes, AUC and rates measured when fit

    def lacks_answer(self, best_score: float) -> bool:
        return best_score < self.threshold

    def rates(self, scores: Sequence[float], answerable: Sequence[bool]) -> dict:
        """How often it would refuse the answerable and the unanswerable ones of `scores`."""
        refused = [self.lacks_answer(s) for s in scores]
        ans = [r for r, a in zip(refused, answerable) if a]
        una = [r for r, a in zip(refused, answerable) if not a]
        return {"n_answerable": len(ans), "n_unanswerable": len(una),
                "refusal_rate_answerable": sum(ans) / len(ans) if ans else None,
                "refusal_rate_unanswerable": sum(una) / len(una) if una else None}

    def to_dict(self) -> dict:
        return {"kind": "evidence_threshold", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "AnswerabilityCheck | None":
        """Read a stored check; None for a check of an older kind (it is not used). `where`
        names its file in the error for a damaged one."""
        if data.get("kind") != "evidence_threshold":
            return None
        try:
            return cls(scorer=str(data["scorer"]), threshold=float(data["threshold"]),
                       fit_report=dict(data.get("fit_report") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerabilityError(f"{where}: malformed answerability check ({exc!r})") from None


def fit(scores: Sequence[float], answerable: Sequence[bool], scorer: str,
        false_refusal: float = FALSE_REFUSAL) -> AnswerabilityCheck:
    """The threshold on best-evidence `scores`: as high as it can be while refusing at most
    `false_refusal` of the answerable questions (the costlier mistake)."""
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(answerable, dtype=bool)
    # Passages with no sentence score -inf (nothing answers); below every real score will do.
    if np.isfinite(s).any():
        s = np.where(np.isfinite(s), s, s[np.isfinite(s)].min() - 1.0)
    if min(int(a.sum()), int((~a).sum())) < MIN_EACH:
        raise AnswerabilityError(f"too few questions to fit the answerability threshold: {int(a.sum())} answerable "
                                 f"and {int((~a).sum())} unanswerable (needs {MIN_EACH} each)")
    # Refusing below the q-quantile of the answerable scores refuses a share q of them.
    threshold = float(np.quantile(s[a], false_refusal))
    check = AnswerabilityCheck(scorer=scorer, threshold=threshold)
    check.fit_report = {"false_refusal_target": false_refusal, "threshold": threshold, "n": len(s), "auc": auc(s, a),
                        **check.rates(s.tolist(), a.tolist())}
    return check


def auc(scores: Sequence[float], answerable: Sequence[bool]) -> float | None:
    """How well the score ranks answerable above unanswerable questions (ROC AUC, ties half)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(answerable, dtype=bool)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))
