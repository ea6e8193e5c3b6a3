"""Core types and helpers below every stage; imports no stage."""
