//! mnist-cuda: the CUDA backend. Not implemented yet (see the CUDA issue); nothing here
//! claims to work.
