//! Pseudo-labelling unlabeled images with a teacher, for noisy-student training (slot).
