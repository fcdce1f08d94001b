"""The students' LightningDataModules, one module per kind of rows: ``targets`` (texts with soft
targets), ``choices`` (multiple-choice rows), ``candidates`` (causal-LM candidate answers), ``preferences``
(chosen/rejected pairs), ``features`` (cached encoder features). The batching helpers, collators and
row types they use live in ``weaks2strong.models``."""
from weaks2strong.student.data.candidates import CandidateDataModule, RowsDataModule
from weaks2strong.student.data.choices import ChoicesDataModule
from weaks2strong.student.data.features import FeaturesDataModule
from weaks2strong.student.data.preferences import PreferenceDataModule
from weaks2strong.student.data.targets import TargetsDataModule

__all__ = ["CandidateDataModule", "ChoicesDataModule", "FeaturesDataModule", "PreferenceDataModule", "RowsDataModule",
           "TargetsDataModule"]
