//! The real ComfyUI from ../shared/comfyui as a test peer (filled in by issue 13's
//! ComfyUI lane).
