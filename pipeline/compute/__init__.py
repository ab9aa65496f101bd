"""Ray: the local cluster for the dev stack and the batch's shared heavy clip-model actor."""
