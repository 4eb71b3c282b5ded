"""Neural Collaborative Filtering (NeuMF, He et al. 2017) on TensorFlow 2: data prep, training, serving."""
