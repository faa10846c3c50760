"""Small pure builders for the parts the webhook adds to a pod, one file each."""
