//! The ComfyUI executor against the real ComfyUI (issue 13's ComfyUI lane).
