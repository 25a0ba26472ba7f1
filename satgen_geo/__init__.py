"""satgen-geo: OpenStreetMap roads and buildings → georeferenced synthetic aerial imagery."""

__version__ = "0.1.0"
