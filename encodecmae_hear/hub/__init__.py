"""Published weights from the network: the official EnCodecMAE models on the Hugging Face
hub (`names`, `store`) and the official EnCodec 24 kHz weights (`encodec_weights`).

Nothing here touches the network unless a caller asks for a published name that is not
in the local cache; importing it imports neither huggingface_hub nor torch.hub.
"""
