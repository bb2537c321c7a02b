"""pte-harness: build, boot and test kernels carrying the __GFP_PTE_MAPPED series."""
