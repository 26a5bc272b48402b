"""fcam: weakly supervised object localization with full-resolution CAMs (F-CAM)."""

__version__ = "0.1.0"
