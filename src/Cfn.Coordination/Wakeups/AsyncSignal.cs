namespace Cfn.Coordination.Wakeups;

/// <summary>
/// An auto-reset event for async code: any number of <see cref="Set"/> calls wake one pending wait once (or, with no
/// wait pending, let the next wait return at once). Every ACK wait and inbox read sleeps on one, once per cycle, so it
/// costs one small object per wait where a <see cref="SemaphoreSlim"/> with a cancellable wait allocated several and
/// took a lock shared with its releaser's callbacks.
/// </summary>
internal sealed class AsyncSignal : IDisposable
{
    private static readonly Task<bool> Woken = Task.FromResult(true);
    private static readonly Task<bool> NotWoken = Task.FromResult(false);

    private readonly Lock _gate = new();
    private bool _set;
    private bool _disposed;
    private Waiter? _first;
    private Waiter? _last;

    public void Set()
    {
        Waiter? woken;
        lock (_gate)
        {
            if (_disposed)
            {
                return; // the waiter is gone
            }

            woken = _first;
            if (woken is null)
            {
                _set = true; // any number of sets before the next wait wake it once
                return;
            }

            Unlink(woken);
        }

        woken.Complete(true);
    }

    /// <summary>Waits until set; false when cancelled.</summary>
    public Task<bool> WaitAsync(CancellationToken cancellationToken) => WaitAsync(Timeout.InfiniteTimeSpan, cancellationToken);

    /// <summary>Waits until set or <paramref name="timeout"/> passes; false on time-out or cancellation.</summary>
    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "must be zero or more, or infinite");
        }

        Waiter waiter;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (cancellationToken.IsCancellationRequested)
            {
                return NotWoken; // a cancelled wait leaves a pending set to the next one
            }

            if (_set)
            {
                _set = false;
                return Woken;
            }

            if (timeout == TimeSpan.Zero)
            {
                return NotWoken;
            }

            waiter = new Waiter(this);
            if (_last is null)
            {
                _first = _last = waiter;
            }
            else
            {
                waiter.Previous = _last;
                _last.Next = waiter;
                _last = waiter;
            }
        }

        waiter.Arm(timeout, cancellationToken);
        return waiter.Task;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
        }
    }

    /// <summary>A wait ends without a set (cancelled or timed out): false, unless a set took it off the list first.</summary>
    private void Abandon(Waiter waiter)
    {
        lock (_gate)
        {
            if (!waiter.Listed)
            {
                return; // a Set dequeued it and completes it with true
            }

            Unlink(waiter);
        }

        waiter.Complete(false);
    }

    private void Unlink(Waiter waiter)
    {
        if (waiter.Previous is null)
        {
            _first = waiter.Next;
        }
        else
        {
            waiter.Previous.Next = waiter.Next;
        }

        if (waiter.Next is null)
        {
            _last = waiter.Previous;
        }
        else
        {
            waiter.Next.Previous = waiter.Previous;
        }

        waiter.Next = waiter.Previous = null;
        waiter.Listed = false;
    }

    /// <summary>One pending wait; its continuation runs on the thread pool, never inside <see cref="Set"/>'s caller.</summary>
    private sealed class Waiter(AsyncSignal owner) : TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        private CancellationTokenRegistration _registration;
        private ITimer? _timer;

        public Waiter? Next { get; set; }

        public Waiter? Previous { get; set; }

        public bool Listed { get; set; } = true;

        public void Arm(TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static w => ((Waiter)w!).Expire(), this);
            }

            if (timeout != Timeout.InfiniteTimeSpan)
            {
                _timer = TimeProvider.System.CreateTimer(static w => ((Waiter)w!).Expire(), this, timeout, Timeout.InfiniteTimeSpan);
            }

            if (Task.IsCompleted)
            {
                Release(); // a set or a cancellation came while this was being armed
            }
        }

        public void Complete(bool woken)
        {
            if (TrySetResult(woken))
            {
                Release();
            }
        }

        private void Expire() => owner.Abandon(this);

        private void Release()
        {
            _registration.Unregister();
            _timer?.Dispose();
        }
    }
}
