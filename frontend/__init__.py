"""Templates and static assets for the pages of the three roles; no business logic."""
