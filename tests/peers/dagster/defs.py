"""The code location Slate's Dagster tests run against (location "film").

Every op writes into the directory Slate tagged the run with (`slate/output`), as a
studio's real jobs do on the shared work volume; the ops print to stdout and stderr and
log through Dagster, so that both reach the stage's log.

- shot_job: render_shot (config: shot, frames, seconds per frame) writes one file per
  frame and materializes the shot with metadata of each kind; check_shot reads them back.
- flaky_job: render_shot, then check_shot, which fails unless the run is a re-execution
  (Dagster tags those with dagster/parent_run_id): a failure that a retry from the
  failure mends without rendering again.
"""

import json
import os
import sys
import time

from dagster import (
    AssetMaterialization,
    Config,
    Definitions,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    job,
    op,
)


class ShotConfig(Config):
    shot: str
    frames: int = 2
    seconds_per_frame: float = 0.0


def output_dir(context: OpExecutionContext) -> str:
    out = context.run.tags.get("slate/output")
    if not out:
        raise Failure(description="this run has no slate/output tag: it was not launched by Slate")
    os.makedirs(out, exist_ok=True)
    return out


@op(out=Out(list))
def render_shot(context: OpExecutionContext, config: ShotConfig) -> list:
    out = output_dir(context)
    context.log.info(f"rendering {config.shot}: {config.frames} frames")
    names = []
    for frame in range(1, config.frames + 1):
        name = f"{config.shot}_{frame:04d}.txt"
        with open(os.path.join(out, name), "w") as f:
            f.write(f"{config.shot} frame {frame}\n")
        names.append(name)
        print(f"wrote frame {frame} of {config.shot}", flush=True)
        if config.seconds_per_frame > 0:
            time.sleep(config.seconds_per_frame)
    print(f"{config.shot}: {len(names)} frames on stderr too", file=sys.stderr, flush=True)
    context.log_event(
        AssetMaterialization(
            asset_key=["shots", config.shot],
            description="the shot's frames",
            metadata={
                "path": MetadataValue.path(out),
                "shot": MetadataValue.text(config.shot),
                "frames": MetadataValue.int(len(names)),
                "seconds": MetadataValue.float(config.frames * config.seconds_per_frame),
                "files": MetadataValue.json({"names": names}),
                "docs": MetadataValue.url("https://docs.dagster.io/"),
            },
        )
    )
    return names


@op(ins={"names": In(list)}, out=Out(Nothing))
def check_shot(context: OpExecutionContext, names: list) -> None:
    out = output_dir(context)
    with open(os.path.join(out, "check.json"), "w") as f:
        json.dump({"frames": names}, f)
    print(f"checked {len(names)} frames", flush=True)


@job
def shot_job():
    check_shot(render_shot())


@op(ins={"names": In(list)}, out=Out(Nothing), config_schema={"fail_first": bool})
def check_once(context: OpExecutionContext, names: list) -> None:
    out = output_dir(context)
    if context.op_config["fail_first"] and "dagster/parent_run_id" not in context.run.tags:
        print("check_once: failing on the first run, as asked", file=sys.stderr, flush=True)
        raise Failure(description=f"check_once looked at {len(names)} frames and wants a second look")
    with open(os.path.join(out, "check.json"), "w") as f:
        json.dump({"frames": names}, f)
    print(f"checked {len(names)} frames", flush=True)


@job
def flaky_job():
    check_once(render_shot())


defs = Definitions(jobs=[shot_job, flaky_job])
