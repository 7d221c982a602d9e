"""The shot job: render a shot's frames, then encode them into a review clip.

A Slate stage runs it with its inputs as the run config, e.g.

    - name: shot
      executor: dagster
      location: film
      job: shot_job
      inputs:
        ops.render_frames.config.shot: ${params.shot}
        ops.render_frames.config.frames: ${params.frames}
        ops.encode_clip.config.fps: 24
"""

import os
import subprocess

from dagster import (
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)


def slate_output(context: OpExecutionContext) -> str:
    """The directory Slate gave this run (its `slate/output` tag), made if needed."""
    out = context.run.tags.get("slate/output")
    if not out or not os.path.isabs(out):
        raise Failure(description="this run has no slate/output tag: launch it from Slate")
    os.makedirs(out, exist_ok=True)
    return out


class FramesConfig(Config):
    shot: str
    frames: int = 24
    width: int = 640
    height: int = 360


class ClipConfig(Config):
    fps: int = 24


def run(context: OpExecutionContext, args: list) -> None:
    """Runs a command, its output in the step's captured log (Slate shows it)."""
    context.log.info(" ".join(args))
    done = subprocess.run(args, capture_output=True, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise Failure(description=f"{args[0]} exited {done.returncode}: {done.stderr.strip()[-800:]}")


@op
def render_frames(context: OpExecutionContext, config: FramesConfig) -> str:
    out = slate_output(context)
    pattern = os.path.join(out, f"{config.shot}_%04d.png")
    run(context, [
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
        "-i", f"testsrc2=size={config.width}x{config.height}:rate=24",
        "-frames:v", str(config.frames), pattern,
    ])
    context.log_event(AssetMaterialization(
        asset_key=["shots", config.shot, "frames"],
        metadata={
            "path": MetadataValue.path(out),
            "frames": MetadataValue.int(config.frames),
            "size": MetadataValue.text(f"{config.width}x{config.height}"),
        },
    ))
    return config.shot


@op
def encode_clip(context: OpExecutionContext, config: ClipConfig, shot: str) -> None:
    out = slate_output(context)
    clip = os.path.join(out, f"{shot}.mp4")
    run(context, [
        "ffmpeg", "-v", "error", "-y", "-framerate", str(config.fps),
        "-i", os.path.join(out, f"{shot}_%04d.png"),
        "-c:v", "libx264", "-pix_fmt", "yuv420p", clip,
    ])
    context.log_event(AssetMaterialization(
        asset_key=["shots", shot, "clip"],
        metadata={
            "path": MetadataValue.path(clip),
            "bytes": MetadataValue.int(os.path.getsize(clip)),
            "fps": MetadataValue.int(config.fps),
        },
    ))


@job
def shot_job():
    encode_clip(render_frames())
