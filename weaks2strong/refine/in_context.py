"""The strong model as an in-context labeller of weak labels (Somerstep et al. 2024, "refinement").

The strong causal LM reads k demonstrations from w2s_train, each carrying its *weak* label, then the
example, and scores each class's verbalizer: p(class k | x) ∝ p_LM(" " + verbalizer_k | demos, x).
Their finding: the strong model's own prior, prompted with weak labels, corrects part of the weak
supervisor's errors, and fine-tuning on these refined labels beats fine-tuning on the weak ones.

Two disjoint demonstration sets are drawn. Every example is labelled with set A unless its prompt is
one of A's, then with set B: no prompt ever shows the example it labels, and each set is a prefix
shared by its rows, so its key/value cache is computed once (``PromptedLM._shared_prefix``).
"""
from __future__ import annotations

import numpy as np

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError
from weaks2strong.teachers.prompted import PromptedLM, content_free_prompt

CALIBRATIONS = ("weak_prior", "content_free", "none")


def match_prior(probs: np.ndarray, prior: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """Per-class multipliers (K,) after which the rows' answers (argmax) fall into the classes in the
    shares ``prior`` (K,).

    A small LM prompted in context ranks well but leans to one class (SST-2, seed 0: AUROC 0.87 on
    val, yet 87% of its answers one class). The weak labels' class shares are a fair estimate of
    the pool's, so the strong model's scores are shifted to them, as in a label-shift correction
    (Saerens et al. 2002) with the target prior fixed. Matching the *mean* probability is not enough:
    the LM's probabilities are flat (SST-2 log-odds mostly within ±1.5), and matching their mean
    sent 96% of the answers to one class. So the mean is matched on the sharpened p^(1/T), which
    approaches matching the answers' shares as T → 0. The log-multipliers b minimise the convex
    sum_n logsumexp(log p_n / T + b) - N prior·b (gradient: mean prediction minus prior)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp, softmax

    sharp = np.log(np.clip(probs, 1e-300, None)) / temperature  # (N, K)
    prior = np.clip(prior, 1e-6, None) / np.clip(prior, 1e-6, None).sum()

    def objective(b):
        shifted = sharp + b  # (N, K)
        return logsumexp(shifted, axis=1).mean() - prior @ b, softmax(shifted, axis=1).mean(0) - prior

    b = minimize(objective, np.zeros(probs.shape[1]), jac=True, method="L-BFGS-B").x
    return softmax(b * temperature)  # the same shift, on the unsharpened log-probs


class InContextRefiner(PromptedLM):
    split_independent = False  # its demonstrations come from the weak labels of the split it refines

    def __init__(self, model: str, shots: int = 8, seed: int = 0, balanced: bool = True, calibrate: str = "weak_prior",
                 answer_cue: str = "\nAnswer:", demo_max_tokens: int = 96, max_prompt_tokens: int = 256,
                 batch_size: int = 16, device: str = "auto", models_dir: str | None = None,
                 trust_remote_code: bool = False, progress: bool = True):
        super().__init__(model, batch_size=batch_size, max_length=1_000_000, use_chat_template=False, shots=shots,
                         shot_seed=seed, calibrate=False, device=device, models_dir=models_dir,
                         trust_remote_code=trust_remote_code, progress=progress)
        if calibrate not in CALIBRATIONS:
            raise TeacherError(f"refiner: calibrate='{calibrate}' is not one of {', '.join(CALIBRATIONS)}")
        self.balanced, self.answer_cue, self.calibration = balanced, answer_cue, calibrate
        self.demo_max_tokens, self.max_prompt_tokens = demo_max_tokens, max_prompt_tokens

    def fit(self, task: Task, split: str, weak_labels: np.ndarray, class_scale: np.ndarray | None = None) -> None:
        """Draw the two demonstration sets from ``split``'s rows, labelled by ``weak_labels`` (N,) (a class
        index, or -1 where the weak supervisor gave none), then calibrate: ``weak_prior`` rescales the
        classes so that the refined labels of ``split`` keep the weak labels' class shares
        (``match_prior``); ``content_free`` divides by each demonstration set's answer to an "N/A"
        input (Zhao et al. 2021); ``none`` keeps the LM's own scores. ``class_scale`` (K,): the
        multipliers an earlier fit on the same rows found, so that refitting skips scoring ``split``."""
        weak_labels = np.asarray(weak_labels)
        if weak_labels.shape != (len(task.split(split)),):
            raise TeacherError(f"refiner: {len(weak_labels)} weak labels for {len(task.split(split))} rows of {split}")
        tok, lm = self._load()
        self._verbalizer_ids(tok, task)
        self._kept = (None, None)
        prompts, ids = task.prompts(split), task.split(split)["example_id"].to_numpy()
        first = self._draw(weak_labels, prompts, exclude=set())
        second = self._draw(weak_labels, prompts, exclude={prompts[i] for i in first})
        self.demo_sets_ = [[(self._left_cut(tok, prompts[i], self.demo_max_tokens), task.verbalizers[weak_labels[i]],
                             str(ids[i])) for i in rows] for rows in (first, second)]
        self.demo_prompts_ = [{prompts[i] for i in rows} for rows in (first, second)]
        self.content_free_ = [None, None]
        if self.calibration == "content_free":
            blank = content_free_prompt(task)
            for s, demos in enumerate(self.demo_sets_):
                prompt = self.render(tok, [blank], demos)
                self.content_free_[s] = self._probs(tok, lm, task, prompt, desc=None)[0]  # (K,)
        self.class_scale_ = np.ones(task.num_classes)
        if class_scale is not None:
            self.class_scale_ = np.asarray(class_scale, dtype=np.float64)
        elif self.calibration == "weak_prior":
            labelled = weak_labels[weak_labels >= 0]
            prior = np.bincount(labelled, minlength=task.num_classes) / max(len(labelled), 1)  # (K,)
            self.class_scale_ = match_prior(self._scores(task, split), prior)

    def _draw(self, weak_labels: np.ndarray, prompts: list[str], exclude: set[str]) -> list[int]:
        """k rows with a weak label and a prompt not in ``exclude`` (nor twice); with ``balanced``, as
        even over the weak classes as the labels allow, so the demos do not teach the majority class."""
        rng = np.random.default_rng(self.shot_seed + len(exclude))
        seen, pools = set(exclude), {}
        for i in rng.permutation(len(prompts)):
            if weak_labels[i] >= 0 and prompts[i] not in seen:
                seen.add(prompts[i])
                pools.setdefault(int(weak_labels[i]) if self.balanced else 0, []).append(int(i))
        picked = []
        while len(picked) < self.shots and any(pools.values()):
            for c in sorted(pools):  # round-robin over the classes
                if pools[c] and len(picked) < self.shots:
                    picked.append(pools[c].pop(0))
        if len(picked) < self.shots:
            raise TeacherError(f"refiner: only {len(picked)} weakly labelled rows for {self.shots} demonstrations "
                               f"(and as many again for the second set)")
        return [picked[j] for j in rng.permutation(len(picked))]

    def demo_set_of(self, prompt: str) -> int:
        """0 (set A) unless the prompt is one of A's demonstrations, then 1."""
        return int(prompt in self.demo_prompts_[0])

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        if not hasattr(self, "demo_sets_"):
            raise TeacherError("refiner: call fit(task, split, weak_labels) before predict_proba")
        probs = self._scores(task, split) * self.class_scale_  # (N, K)
        return probs / probs.sum(axis=1, keepdims=True)

    def _scores(self, task: Task, split: str) -> np.ndarray:
        """The LM's class probabilities (N, K) before the class rescaling; the split that ``fit`` read
        is scored once and kept (fit needs it for the prior, the pipeline for the labels)."""
        ids = tuple(task.split(split)["example_id"].astype(str))
        if getattr(self, "_kept", (None,))[0] == ids:
            return self._kept[1]
        tok, lm = self._load()
        texts, which = self.rendered(task, split)
        probs = np.zeros((len(texts), task.num_classes))
        for s in (0, 1):  # each demonstration set is one shared prefix, scored as one batch run
            rows = np.flatnonzero(which == s)
            if not len(rows):
                continue
            p = self._probs(tok, lm, task, [texts[i] for i in rows],
                            desc=f"refine {split} ({self.model_name}, demos {'AB'[s]})")
            if self.content_free_[s] is not None:
                p = p / self.content_free_[s]
                p /= p.sum(axis=1, keepdims=True)
            probs[rows] = p
        self._kept = (ids, probs)
        return probs

    def rendered(self, task: Task, split: str) -> tuple[list[str], np.ndarray]:
        """Each row's full prompt (demonstrations, then the example and the answer cue) and the
        demonstration set (0 or 1) it carries."""
        tok, _ = self._load()
        prompts = task.prompts(split)
        which = np.array([self.demo_set_of(p) for p in prompts], dtype=int)
        prompts = [self._left_cut(tok, p, self.max_prompt_tokens) for p in prompts]
        return [self.render(tok, [p], self.demo_sets_[s])[0] for p, s in zip(prompts, which)], which

    def render(self, tok, prompts: list[str], demos: list[tuple[str, str, str]]) -> list[str]:
        demos = "".join(f"{p}{self.answer_cue} {answer}\n\n" for p, answer, _ in demos)
        return [(tok.bos_token or "") + demos + p + self.answer_cue for p in prompts]

    def _verbalizer_ids(self, tok, task: Task) -> list[list[int]]:
        spaced = [" " + v.lstrip() for v in task.verbalizers]  # the answer follows the cue after a space
        ids = [tok(v, add_special_tokens=False).input_ids for v in spaced]
        for verbalizer, toks in zip(task.verbalizers, ids):
            if not toks:
                raise TeacherError(f"verbalizer '{verbalizer}' of task '{task.name}' tokenizes to nothing")
        return ids

    @staticmethod
    def _left_cut(tok, text: str, max_tokens: int) -> str:
        """The text's last ``max_tokens`` tokens: a long passage loses its start, the question stays."""
        ids = tok(text, add_special_tokens=False).input_ids
        return text if len(ids) <= max_tokens else tok.decode(ids[-max_tokens:])
