"""Release: the dataset out of the work folder — exports in the formats trainers read, patient-level
splits, licence groups, checksums and verification, a dataset card, and the decontamination list builder."""
