"""AuditoryBench (AudioBERT): animal sound recognition and sound pitch comparison.

Importing this package registers the offline rules of its three prompts
(`auditorybench/categorize`, `auditorybench/animal`, `auditorybench/pitch`).
"""

from pipeline.tasks.auditorybench import offline as _offline  # noqa: F401  (registers rules)
from pipeline.tasks.auditorybench.animal import AnimalTask
from pipeline.tasks.auditorybench.pitch_comparison import PitchTask

__all__ = ["AnimalTask", "PitchTask"]
