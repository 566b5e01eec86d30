output "bucket_names" {
  description = "Bucket names by purpose: photos, results, models."
  value       = { for purpose, bucket in aws_s3_bucket.data : purpose => bucket.bucket }
}

output "bucket_arns" {
  description = "Bucket ARNs by purpose: photos, results, models."
  value       = { for purpose, bucket in aws_s3_bucket.data : purpose => bucket.arn }
}

output "access_log_bucket" {
  description = "Bucket of the S3 server access logs."
  value       = aws_s3_bucket.logs.bucket
}
