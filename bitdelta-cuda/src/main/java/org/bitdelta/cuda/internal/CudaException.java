package org.bitdelta.cuda.internal;

import org.bitdelta.BitDeltaException;

/** A failed call into libbitdelta_cuda: the message names the call, its shapes, the status and the CUDA error. */
public class CudaException extends BitDeltaException {
    private final int status;

    public CudaException(String message, int status) {
        super(message);
        this.status = status;
    }

    public CudaException(String message, Throwable cause) {
        super(message, cause);
        this.status = -1;
    }

    /** The BD_* status code of the failed call, or −1 when the failure happened before the call. */
    public int status() {
        return status;
    }
}
