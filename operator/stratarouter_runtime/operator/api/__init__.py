"""The checkpoint API served by every operator replica: auth (TokenReview), routes, status coalescing."""
