variable "name" {
  description = "Repository name of the one Reverie image (run as `scheduler` or `worker`)."
  type        = string
  default     = "reverie"
}

variable "kms_key_arn" {
  description = "KMS key encrypting the image layers."
  type        = string
}

variable "keep_images" {
  description = "Number of tagged images kept; older ones expire."
  type        = number
  default     = 50
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
