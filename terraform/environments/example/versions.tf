terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }

  # Keep state remote and locked; fill in and uncomment for a real environment.
  # backend "s3" {
  #   bucket         = "example-terraform-state"
  #   key            = "reverie/example.tfstate"
  #   region         = "eu-west-1"
  #   dynamodb_table = "terraform-locks"
  #   encrypt        = true
  # }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project     = "reverie"
      environment = var.environment
      managed-by  = "terraform"
    }
  }
}
