/* Layout kernels, any element size: strided copy (Slice, Concat, strided Gather), permute (Transpose), gather.
 *
 * The strided copy walks the output index space like an odometer (innermost axis fastest) and keeps one byte
 * offset into x and one into y, so it never multiplies indices by strides.
 */
#include "ma_kernels.h"

#include <stddef.h>
#include <string.h>

void ma_copy_strided(const void *x, void *y, int32_t elem_size, int32_t rank, const int32_t *shape,
                     const int32_t *x_strides, const int32_t *y_strides)
{
    const uint8_t *src = (const uint8_t *)x;
    uint8_t *dst = (uint8_t *)y;
    int32_t index[MA_MAX_RANK];
    int32_t axis;
    if (rank < 0 || rank > MA_MAX_RANK) {
        return;
    }
    for (axis = 0; axis < rank; ++axis) {
        if (shape[axis] <= 0) {
            return;
        }
        index[axis] = 0;
    }
    for (;;) {
        memcpy(dst, src, (size_t)elem_size);
        for (axis = rank - 1; axis >= 0; --axis) {
            src += x_strides[axis];
            dst += y_strides[axis];
            if (++index[axis] < shape[axis]) {
                break;
            }
            src -= (ptrdiff_t)x_strides[axis] * shape[axis];
            dst -= (ptrdiff_t)y_strides[axis] * shape[axis];
            index[axis] = 0;
        }
        if (axis < 0) {
            return;
        }
    }
}

void ma_permute(const void *x, void *y, int32_t elem_size, int32_t rank, const int32_t *shape, const int32_t *perm)
{
    int32_t x_strides[MA_MAX_RANK], out_shape[MA_MAX_RANK], src_strides[MA_MAX_RANK], dst_strides[MA_MAX_RANK];
    int32_t axis, stride;
    if (rank < 0 || rank > MA_MAX_RANK) {
        return;
    }
    for (axis = rank - 1, stride = elem_size; axis >= 0; --axis) {
        x_strides[axis] = stride;
        stride *= shape[axis];
    }
    for (axis = 0; axis < rank; ++axis) {
        out_shape[axis] = shape[perm[axis]];
        src_strides[axis] = x_strides[perm[axis]];
    }
    for (axis = rank - 1, stride = elem_size; axis >= 0; --axis) {
        dst_strides[axis] = stride;
        stride *= out_shape[axis];
    }
    ma_copy_strided(x, y, elem_size, rank, out_shape, src_strides, dst_strides);
}

void ma_gather(const void *x, void *y, int32_t outer, int32_t axis_dim, int32_t inner_bytes,
               const int32_t *indices, int32_t count)
{
    const uint8_t *src = (const uint8_t *)x;
    uint8_t *dst = (uint8_t *)y;
    int32_t o, c;
    for (o = 0; o < outer; ++o) {
        for (c = 0; c < count; ++c) {
            memcpy(dst, src + (size_t)indices[c] * (size_t)inner_bytes, (size_t)inner_bytes);
            dst += inner_bytes;
        }
        src += (size_t)axis_dim * (size_t)inner_bytes;
    }
}
