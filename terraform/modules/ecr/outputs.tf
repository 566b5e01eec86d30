output "repository_url" {
  description = "Image name for the k8s overlays' `images:` newName."
  value       = aws_ecr_repository.this.repository_url
}
