"""Fine-tuning: DDPO with LoRA, the trainer, checkpoints and resume (issue: fine-tune)."""
