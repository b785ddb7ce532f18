"""ensemble stage."""
