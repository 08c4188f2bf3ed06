"""Shading: colour networks and (later) BRDFs / material heads."""
