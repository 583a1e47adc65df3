package airlockv1

// MaxImageChunkBytes caps the data of one ImportImageRequest, as
// broker.proto says: the broker refuses a larger message, and the CLI
// sends chunks of this size. Both use this constant, so that a client
// built from this module never sends what its broker refuses.
const MaxImageChunkBytes = 1 << 20
