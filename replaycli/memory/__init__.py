"""The rehearsal memory: `store` (the stored samples and the vectorised kernels) and `buffer`
(the one storage policy: max_size, groupby, selection, shares)."""
