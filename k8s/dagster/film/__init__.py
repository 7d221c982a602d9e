"""The film pipeline's Dagster code location (`--location-name film`, module `film`).

Jobs Slate runs as `dagster` stages (docs/dagster.md). Slate tags each run with
`slate/output`: the attempt's output directory on the work volume, mounted at the same
path here as in Slate; what a job writes there becomes the stage's assets.
"""

from dagster import Definitions

from .jobs import shot_job

defs = Definitions(jobs=[shot_job])
