"""Event sources: the ways events and card callbacks reach admission."""
