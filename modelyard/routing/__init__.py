"""modelyard.routing."""
