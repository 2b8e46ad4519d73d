"""Knowledge: a medical corpus chunked, embedded offline and stored in Chroma; retrieval per image."""
