"""Pure tensor / numpy functions shared by archs, losses, datasets and models; they import nothing else of ours."""
