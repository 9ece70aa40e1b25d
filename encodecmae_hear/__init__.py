"""EnCodecMAE as a HEAR 2021 module: `load_model`, `get_scene_embeddings`,
`get_timestamp_embeddings`, and `embed_file` for one audio file. Importing the package
loads nothing and touches no device."""
from encodecmae_hear.hear import embed_file, get_scene_embeddings, get_timestamp_embeddings, load_model

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "embed_file"]
__version__ = "0.1.0"
