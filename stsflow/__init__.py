"""stsflow: predict how fine-tuning changes a model's accuracy across domains from SAE features
(the SAE-based Transferability Score), and check the prediction against real fine-tuning."""

__version__ = "0.1.0"
