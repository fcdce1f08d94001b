"""The training recipes of the strong student. A recipe (``student.recipe`` in the config) builds
the LightningModule and DataModule for a kind of task: ``classify`` (encoder + K-way head) and
``multiple_choice`` (one score per option), ``verbalize`` (a causal LM scoring each class's
verbalizer), ``teacher_forcing`` (a causal LM on candidate answers) and ``probe`` (a head over a
frozen encoder's cached features). The modules, heads and losses they assemble live in
``weaks2strong.models``, where the fine-tuned weak teacher can share them; their LightningDataModules in
``weaks2strong.student.data``.
"""
from weaks2strong.student.base import StudentParts
from weaks2strong.student.classify import classify
from weaks2strong.student.generate import teacher_forcing
from weaks2strong.student.multiple_choice import multiple_choice
from weaks2strong.student.probe import encode_features, fit_probe, fit_probe_on_val, probe
from weaks2strong.student.verbalize import verbalize

__all__ = ["StudentParts", "classify", "encode_features", "fit_probe", "fit_probe_on_val", "multiple_choice", "probe",
           "teacher_forcing", "verbalize"]
