using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>A <see cref="FakeTimeProvider"/> that counts the timers created through it and those still alive (not disposed).</summary>
internal sealed class CountingTimeProvider(DateTimeOffset start) : FakeTimeProvider(start)
{
    private int _live;
    private int _created;

    public int LiveTimers => Volatile.Read(ref _live);

    public int CreatedTimers => Volatile.Read(ref _created);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var inner = base.CreateTimer(callback, state, dueTime, period);
        Interlocked.Increment(ref _created);
        Interlocked.Increment(ref _live);
        return new CountedTimer(inner, this);
    }

    private sealed class CountedTimer(ITimer inner, CountingTimeProvider owner) : ITimer
    {
        private int _disposed;

        public bool Change(TimeSpan dueTime, TimeSpan period) => inner.Change(dueTime, period);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Interlocked.Decrement(ref owner._live);
            }

            inner.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
