from biqa.models.base import QualityModel, QualityOutput

__all__ = ["QualityModel", "QualityOutput"]
