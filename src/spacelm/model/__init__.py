"""Neural parts of spacelm: the sparse point encoder and (later) the transformers model classes.

Everything here imports torch; ``import spacelm`` alone does not. ``sparse_conv`` holds the sparse 3D
convolution layers in plain PyTorch, ``point_encoder`` the SceneScript sparse ResNet built from them.
"""
